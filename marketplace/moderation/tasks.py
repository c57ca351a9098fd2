"""Thin Celery wrappers over the moderation app."""
from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail


@shared_task(name="moderation.send_email", ignore_result=True, autoretry_for=(OSError,), retry_backoff=30,
             max_retries=8, time_limit=60)
def send_email(to, subject, body):
    """A notification by e-mail (notifications.email, only with NOTIFY_BY_EMAIL on); a mail server
    that is down is tried again, with backoff, for about two hours."""
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to])
