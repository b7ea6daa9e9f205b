"""Generated titles: a model call that is not part of the thread, kept like every call."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0011_message_turn_details"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="purpose",
            field=models.CharField(
                choices=[("chat", "Chat"), ("title", "Generated title")],
                default="chat",
                max_length=8,
            ),
        ),
    ]
