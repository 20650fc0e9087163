"""`Device.secret` becomes `secret_encrypted`, wide enough for a Fernet token (devices/encryption.py).

0003 then encrypts the rows in place.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(model_name="device", old_name="secret", new_name="secret_encrypted"),
        migrations.AlterField(
            model_name="device",
            name="secret_encrypted",
            field=models.CharField(editable=False, max_length=512),
        ),
    ]
