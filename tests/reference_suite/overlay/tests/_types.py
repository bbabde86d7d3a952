"""The request context the reference's tests pass around: who is asking."""

from pydantic import BaseModel


class RequestContext(BaseModel):
    """A user id, as an app's context factory would build it."""

    user_id: str
