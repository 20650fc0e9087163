"""URL routes of the devices app."""

urlpatterns = []
