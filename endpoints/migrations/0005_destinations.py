import django.core.validators
import django.db.models.deletion
import endpoints.models
from django.db import migrations, models


class Migration(migrations.Migration):
    """Destinations: each endpoint routes over one or more (connection, model) pairs."""

    dependencies = [
        ("connections", "0001_initial"),
        ("endpoints", "0004_endpoints_may_allow_mixed_environments"),
    ]

    operations = [
        migrations.CreateModel(
            name="Destination",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model", models.CharField(help_text="The provider's model id, such as gpt-4o-mini.", max_length=200)),
                ("role", models.CharField(choices=[("primary", "Primary"), ("fallback", "Fallback")], default="primary", max_length=8)),
                ("weight", models.PositiveSmallIntegerField(blank=True, help_text="A primary's share of the calls, 1–100; the primaries' weights add up to 100.", null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(100)])),
                ("position", models.PositiveSmallIntegerField(default=0, help_text="Primaries first, then fallbacks in order.")),
                ("cooling_until", models.DateTimeField(blank=True, editable=False, null=True)),
                ("connection", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="destinations", to="connections.connection")),
                ("endpoint", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="destinations", to="endpoints.endpoint")),
            ],
            options={"ordering": ["endpoint", "position"]},
        ),
        migrations.AddConstraint(
            model_name="destination",
            constraint=models.UniqueConstraint(fields=("endpoint", "role", "connection", "model"), name="destination_once_per_role"),
        ),
        migrations.AddConstraint(
            model_name="destination",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("role", "primary"), ("weight__gte", 1), ("weight__lte", 100)), models.Q(("role", "fallback"), ("weight__isnull", True)), _connector="OR"),
                name="destination_weight_by_role",
            ),
        ),
        migrations.AddField(
            model_name="endpoint",
            name="fallback_on",
            field=models.JSONField(blank=True, default=endpoints.models.default_fallback_on, help_text="Failures after which a call goes on to the next destination. A refused request (400) never does.", verbose_name="fall back on"),
        ),
        migrations.AddField(
            model_name="endpoint",
            name="deadline_seconds",
            field=models.PositiveIntegerField(default=120, help_text="How long a call may take over all its attempts, until the answer (or a stream's first byte).", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(3600)], verbose_name="deadline (seconds)"),
        ),
        # Until the endpoints' own connection and model are moved to destinations (the next migration),
        # both accessors exist; the old foreign key's reverse name makes way for the new relation's, and
        # both columns may be empty, so that going back can add them again before filling them.
        migrations.AlterField(
            model_name="endpoint",
            name="connection",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="connections.connection"),
        ),
        migrations.AlterField(
            model_name="endpoint",
            name="model",
            field=models.CharField(default="", max_length=200),
        ),
        migrations.AddField(
            model_name="endpoint",
            name="connections",
            field=models.ManyToManyField(related_name="endpoints", through="endpoints.Destination", to="connections.connection"),
        ),
    ]
