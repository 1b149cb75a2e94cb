"""Passwords: an argon2 hash matches only its password, and an empty or missing password
signs nobody in (docs/http-api.md#differences-from-the-reference-service, item 12)."""

from __future__ import annotations

from app.models import User
from app.users import passwords
from app.users.passwords import hash_password, verify_password
from tests.utils.builders import PASSWORD, Api
from tests.utils.users import sign_in


class TestItem12PasswordsThatAreNotThere:
    """The reference signed in an account whose password was empty."""

    async def test_an_empty_or_missing_password_never_signs_anyone_in(self, api: Api) -> None:
        # An account whose stored hash is of the empty password (e.g. imported data).
        async with api.services.sessions() as session:
            hashed = passwords._hasher.hash("")
            session.add(User(name="legacy", email="legacy@jwt.com", password_hash=hashed))
            await session.commit()

        empty = await sign_in(api, "legacy@jwt.com", "")
        missing = await api.client.put("/api/auth", json={"email": "legacy@jwt.com"})
        null = await api.client.put("/api/auth", json={"email": "legacy@jwt.com", "password": None})

        assert empty.status_code == 404
        assert missing.status_code == null.status_code == 400
        assert "token" not in empty.text + missing.text + null.text


class TestVerifying:
    async def test_only_the_password_that_was_hashed_matches(self) -> None:
        hashed = await hash_password(PASSWORD)

        assert await verify_password(hashed, PASSWORD)
        assert not await verify_password(hashed, PASSWORD + " ")
        assert not await verify_password(hashed, "")

    async def test_no_account_or_a_broken_hash_matches_nothing(self) -> None:
        # An unknown email: verified against a dummy hash (as slow), never a match.
        assert not await verify_password(None, PASSWORD)
        assert not await verify_password("", PASSWORD)
        assert not await verify_password("not an argon2 hash", PASSWORD)
