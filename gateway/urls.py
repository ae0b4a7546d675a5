from django.urls import path

from . import views

app_name = "gateway"

urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="chat_completions"),
    path("v1/embeddings", views.embeddings, name="embeddings"),
    path("v1/models", views.models, name="models"),
    path("<name:endpoint_name>/invocations", views.invocations, name="invocations"),
]
