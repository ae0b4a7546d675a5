"""An authentication backend of the tests' own: it grants everyone the permission to view endpoints."""


class EveryoneMayView:
    def authenticate(self, request, **credentials):
        return None

    def has_perm(self, user, perm, obj=None) -> bool:
        return user.is_active and perm == "endpoints.view_endpoint"
