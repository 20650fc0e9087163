"""The base of every service error (accounts, devices, relay), with no dependency at all.

A `DomainError` carries a stable machine-readable `code`, a `message` without secrets and the
`http_status` its REST answer gets; `core.api.exception_handler` translates it at the REST edge.
"""


class DomainError(Exception):
    """Base of every domain error.

    `code` is a stable snake_case identifier documented in the API (e.g. `invalid_pairing_code`);
    `message` is a human-readable sentence that never contains a secret.
    """

    code: str = "error"
    default_message: str = "The operation failed."
    http_status: int = 400  # the REST answer's status when this error reaches an API view

    def __init__(self, message: str | None = None, *, code: str | None = None):
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)
