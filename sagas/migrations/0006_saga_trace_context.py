from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0005_saga_hot_updates"),
    ]

    operations = [
        migrations.AddField(
            model_name="sagainstance",
            name="traceparent",
            field=models.CharField(blank=True, default="", max_length=55),
        ),
        migrations.AddField(
            model_name="sagainstance",
            name="tracestate",
            field=models.CharField(blank=True, default="", max_length=512),
        ),
    ]
