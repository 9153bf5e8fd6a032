"""RedisServerState.restarted_at: the last restart a controller saw, per server.

Filled from the restart events already recorded, so an existing installation
shows its last seen restart at once.
"""

from django.db import migrations, models


def from_restart_events(apps, schema_editor) -> None:
    MetricEvent = apps.get_model("metrics", "MetricEvent")
    RedisServerState = apps.get_model("metrics", "RedisServerState")
    latest = {}
    for at, details in MetricEvent.objects.filter(kind="restart").order_by("at").values_list("at", "details"):
        server = (details or {}).get("server")
        if server:
            latest[server] = at
    for state in RedisServerState.objects.filter(server__in=list(latest)):
        state.restarted_at = latest[state.server]
        state.save(update_fields=["restarted_at"])


class Migration(migrations.Migration):
    dependencies = [("metrics", "0002_default_settings")]

    operations = [
        migrations.AddField(model_name="redisserverstate", name="restarted_at",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.RunPython(from_restart_events, migrations.RunPython.noop),
    ]
