"""Users: accounts and sessions (issue 12).

- logins.py: failed sign-in throttling, shared by every replica through the database.

Their HTTP surface is app/routes/auth.py and app/routes/users.py.
"""
