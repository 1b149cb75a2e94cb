"""Sessions: signing in hands out a token backed by a session row, so it can be revoked.

The token itself is made and checked in app/security.py (the check is on every
signed-in request); signing out deletes the row (app/routes/auth.py).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import AuthSession
from app.security import issue_token
from app.services import Services


async def start_session(session: AsyncSession, services: Services, user_id: int) -> str:
    """A new signed token backed by a session row (so it can be revoked)."""
    issued = issue_token(
        user_id,
        secret=services.jwt_secret,
        ttl_s=services.settings.token_ttl_s,
        now=services.clock.now(),
    )
    session.add(AuthSession(jti=issued.jti, user_id=user_id, expires_at=issued.expires_at))
    await session.commit()
    return issued.token
