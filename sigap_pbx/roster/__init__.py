"""Rotating shift roster: who is on duty in each shift, with no I/O.

`model` contains the roster data and its validation, and `schedule` turns a rotation
into shift windows, on-duty lists and coverage problems.
"""
