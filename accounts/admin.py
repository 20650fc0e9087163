"""Django admin for the email-based user model."""

from typing import TYPE_CHECKING, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm

from .models import User

# Generic in django-stubs only (they cannot be subscripted at run time).
if TYPE_CHECKING:
    _CreationForm = BaseUserCreationForm[User]
    _ChangeForm = UserChangeForm[User]
    _UserAdmin = DjangoUserAdmin[User]
else:
    _CreationForm, _ChangeForm, _UserAdmin = BaseUserCreationForm, UserChangeForm, DjangoUserAdmin


class UserCreationAdminForm(_CreationForm):
    """Admin "add user" form keyed by email (the model has no username)."""

    class Meta:
        model = User
        fields = ("email",)
        field_classes: ClassVar[dict[str, type[forms.Field]]] = {"email": forms.EmailField}

    def clean_email(self) -> str:
        """Store the email lower-case and refuse a case-insensitive duplicate."""
        email: str = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        return email


class UserChangeAdminForm(_ChangeForm):
    """Admin "change user" form keyed by email."""

    class Meta:
        model = User
        fields = "__all__"
        field_classes: ClassVar[dict[str, type[forms.Field]]] = {"email": forms.EmailField}


@admin.register(User)
class UserAdmin(_UserAdmin):
    """Users listed and searched by email; no username anywhere."""

    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
