from django.apps import AppConfig


class ArchivesConfig(AppConfig):
    name = "apps.archives"
    verbose_name = "Archives"
