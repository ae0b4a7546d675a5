from django.db import migrations


def to_destinations(apps, schema_editor):
    """Each endpoint's connection and model become its one primary destination, at weight 100."""
    Endpoint, Destination = apps.get_model("endpoints", "Endpoint"), apps.get_model("endpoints", "Destination")
    Destination.objects.bulk_create(
        Destination(endpoint_id=endpoint_id, connection_id=connection_id, model=model, role="primary", weight=100,
                    position=0)
        for endpoint_id, connection_id, model in Endpoint.objects.values_list("id", "connection_id", "model").iterator()
    )


def to_one_connection(apps, schema_editor):
    """Back: each endpoint keeps its heaviest primary (the first of equals); the other destinations are lost."""
    Endpoint, Destination = apps.get_model("endpoints", "Endpoint"), apps.get_model("endpoints", "Destination")
    chosen = {}
    for destination in Destination.objects.filter(role="primary").order_by("endpoint_id", "-weight", "position", "id"):
        chosen.setdefault(destination.endpoint_id, destination)
    for endpoint in Endpoint.objects.all().iterator():
        destination = chosen.get(endpoint.pk)
        if destination is None:
            raise RuntimeError(f"Endpoint {endpoint.name!r} has no primary destination to move back.")
        endpoint.connection_id, endpoint.model = destination.connection_id, destination.model
        endpoint.save(update_fields=["connection", "model"])


class Migration(migrations.Migration):
    dependencies = [("endpoints", "0005_destinations")]

    operations = [migrations.RunPython(to_destinations, to_one_connection)]
