from django import forms

from core.limits import MAX_REQUESTS_PER_MINUTE, MAX_TOKEN_BUDGET, BudgetPeriod

from .models import EXPIRES_DAYS_MAX, EXPIRES_DAYS_MIN, ApiToken, Scope


class TokenCreateForm(forms.Form):
    expires_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=EXPIRES_DAYS_MIN,
        max_value=EXPIRES_DAYS_MAX,
        help_text="Leave empty for a token that does not expire.",
    )
    scope = forms.ChoiceField(
        label="May be used for", choices=Scope.choices, initial=Scope.FULL, required=False,
        help_text="Read-only API: reads through the API, no gateway calls. Gateway only: no API use at all.",
    )
    endpoints = forms.ModelMultipleChoiceField(
        label="Limit to endpoints",
        # The endpoints app is named through the relation, not imported: tokens sit beside it, not above it.
        queryset=ApiToken._meta.get_field("endpoints").related_model.objects.order_by("name").only("id", "name"),
        required=False,
        help_text="The gateway refuses the token for any other endpoint. None selected: any endpoint.",
    )
    requests_per_minute = ApiToken._meta.get_field("requests_per_minute").formfield(
        label="Requests per minute", min_value=1, max_value=MAX_REQUESTS_PER_MINUTE)
    token_budget = ApiToken._meta.get_field("token_budget").formfield(
        label="Token budget", min_value=1, max_value=MAX_TOKEN_BUDGET)
    budget_period = ApiToken._meta.get_field("budget_period").formfield(label="Budget period", required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is None or not user.has_perm("endpoints.view_endpoint"):
            # Endpoint names are for those who may see endpoints (a token of anyone else calls none anyway).
            del self.fields["endpoints"]
        else:
            # Only the user's teams' endpoints: another team's is neither offered nor accepted by id.
            self.fields["endpoints"].queryset = self.fields["endpoints"].queryset.visible_to(user)

    def clean_scope(self) -> str:
        return self.cleaned_data["scope"] or Scope.FULL  # a form posted without it (a script) gets a full token

    def clean_budget_period(self) -> str:
        return self.cleaned_data["budget_period"] or BudgetPeriod.MONTH
