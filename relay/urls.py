"""URL routes of the relay app."""

urlpatterns = []
