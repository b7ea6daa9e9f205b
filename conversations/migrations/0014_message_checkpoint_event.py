"""A reload mid-answer resumes at the checkpoint: the event its saved text reaches."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0013_api_threads_as_trees"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="checkpoint_event",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
