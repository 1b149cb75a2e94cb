"""Users: accounts and sessions (issue 12).

- accounts.py: an account's roles, and admin accounts (`pizza admin create`, ADMIN_EMAIL).
- sessions.py: signing in: a token backed by a session row, so it can be revoked.
- logins.py: failed sign-in throttling, shared by every replica through the database.
- passwords.py: password hashing (argon2id), off the event loop.

Their HTTP surface is app/routes/auth.py and app/routes/users.py. The bearer-token check
that every signed-in request pays for stays in app/security.py, beside app/deps.py, its
one caller.
"""
