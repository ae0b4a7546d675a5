"""Models that know what changed since they were loaded: audit entries name the fields, never the values."""

from django.db import models


class RemembersLoadedState(models.Model):
    """Keeps the values of `tracked_fields` as loaded, so a save can tell which of them changed."""

    tracked_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = instance.snapshot()
        return instance

    def snapshot(self) -> dict:
        """The tracked values as they are now (dicts copied, so that later edits in place still show)."""
        attnames = {name: self._meta.get_field(name).attname for name in self.tracked_fields}
        loaded = {name: self.__dict__[attname] for name, attname in attnames.items() if attname in self.__dict__}
        return {name: dict(value) if isinstance(value, dict) else value for name, value in loaded.items()}

    def loaded_value(self, name: str):
        return getattr(self, "_loaded", {}).get(name)

    def changed_fields(self) -> list[str]:
        """Names of the tracked fields whose value differs from the loaded one (all of them for a new row)."""
        if self._state.adding:
            return [name for name in self.tracked_fields]
        loaded = getattr(self, "_loaded", {})
        return [name for name, value in self.snapshot().items() if loaded.get(name) != value]

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        self._loaded = self.snapshot()
