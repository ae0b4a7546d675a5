# Write stamps (core/stamps.py): the lists remember their totals by them.


from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='WriteStamp',
            fields=[
                ('table_name', models.CharField(max_length=63, primary_key=True, serialize=False)),
                ('stamp', models.BigIntegerField()),
            ],
        ),
    ]
