"""Users: accounts and sessions.

- accounts.py: an account's roles, admin accounts (`pizza admin create`, ADMIN_EMAIL), and
  the last admin, who stays.
- sessions.py: signing in: a token backed by a session row, so it can be revoked.
- logins.py: sign-in limits per client address and per account from one address, counted
  in the database every replica shares.
- passwords.py: password hashing (argon2id), off the event loop.

Their HTTP surface is app/routes/auth.py and app/routes/users.py. The bearer-token check
that every signed-in request pays for stays in app/security.py, beside app/deps.py, its
one caller.
"""
