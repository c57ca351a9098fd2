"""Staff use the Django admin: the chain deployment, the outbox and users are there."""
import pytest

from marketplace.accounts.models import User


@pytest.fixture
def staff_client(client, db):
    admin = User.objects.create_superuser("admin", "admin@example.com", "a-long-password-1")
    client.force_login(admin)
    return client


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/chain/deployment/", "/admin/outbox/outboxmessage/",
             "/admin/accounts/user/", "/admin/orders/disputestatement/",
             "/admin/orders/creditentry/"]
)
def test_admin_pages_render_for_staff(staff_client, path):
    assert staff_client.get(path).status_code == 200


def test_admin_requires_sign_in(client, db):
    response = client.get("/admin/chain/deployment/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_wallet_user_is_named_by_its_address(db):
    user = User.objects.create(username="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                               address="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
    assert str(user) == user.address
    user.display_name = "Alice"
    assert str(user) == "Alice"


def test_staff_read_dispute_statements_and_cannot_change_them(staff_client):
    from marketplace.orders.models import DisputeStatement

    said = DisputeStatement.objects.create(chain_id=31337, market="0x" + "4d" * 20, order_id=7,
                                           role="buyer", author="0x" + "ab" * 20,
                                           text="The file is empty.")
    listed = staff_client.get("/admin/orders/disputestatement/?q=empty").content.decode()
    assert ">7<" in listed or "7</a>" in listed
    page = staff_client.get(f"/admin/orders/disputestatement/{said.pk}/change/")
    assert page.status_code == 200 and "The file is empty." in page.content.decode()
    delete = staff_client.post(f"/admin/orders/disputestatement/{said.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert DisputeStatement.objects.filter(pk=said.pk).exists()
