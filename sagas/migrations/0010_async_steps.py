from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0008_operator_repair"),
    ]

    operations = [
        migrations.AddField(
            model_name="sagainstance",
            name="callback",
            field=models.TextField(blank=True, null=True),
        ),
    ]
