from django.db import models


class WriteStamp(models.Model):
    """A number that every write to a table changes, kept by the database's triggers (core/stamps.py): what was
    counted from the table in a statement that read its stamp still holds while the stamp is the same."""

    table_name = models.CharField(max_length=63, primary_key=True)
    stamp = models.BigIntegerField()

    def __str__(self) -> str:
        return self.table_name
