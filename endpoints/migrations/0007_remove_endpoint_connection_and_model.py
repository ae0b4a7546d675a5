from django.db import migrations, models


class Migration(migrations.Migration):
    """The endpoint's own connection and model now live in its destinations."""

    dependencies = [("endpoints", "0006_endpoints_to_one_primary_destination")]

    operations = [
        migrations.RemoveField(model_name="endpoint", name="connection"),
        migrations.RemoveField(model_name="endpoint", name="model"),
    ]
