"""Staff use the Django admin: the chain deployment, the outbox and users are there."""
import pytest

from marketplace.accounts.models import User


@pytest.fixture
def staff_client(client, db):
    admin = User.objects.create_superuser("admin", "admin@example.com", "a-long-password-1")
    client.force_login(admin)
    return client


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/chain/deployment/", "/admin/outbox/outboxmessage/", "/admin/accounts/user/"]
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
