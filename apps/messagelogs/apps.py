from django.apps import AppConfig


class MessagelogsConfig(AppConfig):
    name = "apps.messagelogs"
    verbose_name = "Message logs"
