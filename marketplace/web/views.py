"""Server-rendered pages. They never wait on the chain or the broker: live status is fetched
from /healthz by the page itself."""
from django.shortcuts import render


def home(request):
    return render(request, "web/home.html")
