"""MetricCounter: counts that only grow, for Prometheus' *_total families.

The events already recorded are counted at once, so that an existing
installation's counters start from what its database holds.
"""

from collections import Counter

from django.db import migrations, models

from apps.metrics.counters import counts_for_event, label_key


def count_existing_events(apps, schema_editor) -> None:
    MetricEvent = apps.get_model("metrics", "MetricEvent")
    MetricCounter = apps.get_model("metrics", "MetricCounter")
    totals: Counter = Counter()
    rows = MetricEvent.objects.values_list("kind", "subject", "new_status", "details")
    for kind, subject, new_status, details in rows.iterator():
        for name, labels in counts_for_event(kind, subject, new_status, details):
            totals[(name, label_key(labels))] += 1
    MetricCounter.objects.bulk_create(
        [MetricCounter(name=name, labels=key, value=value) for (name, key), value in totals.items()])


class Migration(migrations.Migration):
    dependencies = [("metrics", "0003_redisserverstate_restarted_at")]

    operations = [
        migrations.CreateModel(
            name="MetricCounter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=60)),
                ("labels", models.CharField(blank=True, default="", max_length=300)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("name", "labels"),
                                                             name="metrics_metriccounter_name_labels")]},
        ),
        migrations.RunPython(count_existing_events, migrations.RunPython.noop),
    ]
