from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0010_webhook_outbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="sagainstance",
            name="callback",
            field=models.TextField(blank=True, null=True),
        ),
    ]
