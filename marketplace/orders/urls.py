from django.urls import path

from . import api

urlpatterns = [
    path("datasets/<slug:slug>/versions/<int:number>/download", api.VersionDownloadView.as_view(),
         name="version-download"),
    path("chain", api.ChainView.as_view(), name="chain"),
    path("purchases", api.PurchaseReceiptView.as_view(), name="purchase-receipt"),
    path("me/orders", api.LibraryView.as_view(), name="my-orders"),
    path("me/returns", api.ReturnsView.as_view(), name="my-returns"),
    path("me/sales", api.SalesView.as_view(), name="my-sales"),
    path("orders/<int:order_id>/relay", api.RelayView.as_view(), name="order-relay"),
    path("relay/<int:pk>", api.RelayedActionView.as_view(), name="relayed-action"),
    path("orders/<int:order_id>/statements", api.OrderStatementsView.as_view(),
         name="order-statements"),
]
