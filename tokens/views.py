"""The Tokens settings page: create (shown once), list and revoke the signed-in user's API tokens."""

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404, redirect
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from .forms import TokenCreateForm
from .models import ApiToken
from .services import token_create, token_revoke


@method_decorator(never_cache, name="dispatch")
class TokenListView(LoginRequiredMixin, TemplateView):
    """GET lists tokens; POST creates one and renders it once in this response (never stored or redirected)."""

    template_name = "tokens/token_list.html"

    def get_context_data(self, **kwargs):
        kwargs.setdefault("form", TokenCreateForm(user=self.request.user))
        kwargs["tokens"] = ApiToken.objects.filter(user=self.request.user).prefetch_related("endpoints")
        return super().get_context_data(**kwargs)

    def post(self, request, *args, **kwargs):
        form = TokenCreateForm(request.POST, user=request.user)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        token, plaintext = token_create(user=request.user, actor=request.user, **form.cleaned_data)
        messages.success(request, f"Token {token.prefix}… created. Copy it now: it will not be shown again.")
        return self.render_to_response(self.get_context_data(new_token=plaintext,
                                                             form=TokenCreateForm(user=request.user)))


class TokenRevokeView(LoginRequiredMixin, View):
    http_method_names = ["post"]

    def post(self, request, pk: int):
        token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk, user=request.user)
        token_revoke(token=token, actor=request.user)
        messages.success(request, f"Token {token.prefix}… revoked.")
        return redirect("tokens:list")
