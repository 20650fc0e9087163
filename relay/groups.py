"""Every channel-layer group name the relay uses, built in one place.

Names match the channel layer's pattern (`[A-Za-z0-9._-]`, under 100 characters): user ids are
integers, so no user input ever reaches a group name.
"""


def owner_apps(user_id: int) -> str:
    """The group of every app socket of user `user_id`: the audience of the robots that user owns.

    A robot's events go to the group of its owner *at the moment of the event* (read from the
    database), so unpairing takes effect for the very next frame.
    """
    return f"owner.{int(user_id)}.apps"
