"""The web dashboard (``conveyor ui``) and its JSON API: ``create_ui_app`` in ``conveyor.ui.app``."""
