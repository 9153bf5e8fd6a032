"""Create the cMetricSettings singleton with the default thresholds of docs/metrics.md."""

from django.db import migrations

# Frozen here on purpose: a later change of the model's defaults must not
# rewrite what this migration did on existing installations.
DEFAULTS = {
    "queue_warn": 1000,
    "queue_critical": 10000,
    "memory_warn_percent": 90,
    "memory_critical_percent": 98,
    "evicted_keys_warn_min": 1,
    "evicted_keys_critical_min": 10,
    "rejected_connections_critical_min": 1,
    "history_retention_days": 30,
}


def create_defaults(apps, schema_editor):
    settings_model = apps.get_model("metrics", "cMetricSettings")
    settings_model.objects.get_or_create(pk=1, defaults=DEFAULTS)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
