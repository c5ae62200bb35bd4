"""The agency directory and the incident reports that operators send to agencies."""
