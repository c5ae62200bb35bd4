"""Files and paths of the Asterisk instance the controller drives."""
