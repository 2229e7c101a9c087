from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0002_engine_cause"),
    ]

    operations = [
        migrations.AddField(
            model_name="sagainstance",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=128),
        ),
    ]
