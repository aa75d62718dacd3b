def test_public_pages_render(client, catalog):
    for path in ("/", "/pricing", "/terms", "/signup", "/login", "/password/forgot"):
        response = client.get(path)
        assert response.status_code == 200, path
