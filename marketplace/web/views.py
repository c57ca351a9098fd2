"""Server-rendered pages. They never wait on the chain or the broker: live status is fetched
from /healthz by the page itself."""
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@ensure_csrf_cookie  # the wallet script sends the CSRF token with its sign-in and sign-out calls
def home(request):
    return render(request, "web/home.html")
