"""What a turn's answer records besides its text: how long the model thought, and the system
prompt it was sent first."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0010_conversation_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="reasoning_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="system_prompt",
            field=models.TextField(blank=True),
        ),
    ]
