from django import forms

from .models import EXPIRES_DAYS_MAX, EXPIRES_DAYS_MIN


class TokenCreateForm(forms.Form):
    expires_days = forms.IntegerField(
        label="Expires in (days)",
        required=False,
        min_value=EXPIRES_DAYS_MIN,
        max_value=EXPIRES_DAYS_MAX,
        help_text="Leave empty for a token that does not expire.",
    )
