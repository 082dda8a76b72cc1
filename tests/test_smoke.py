


def test_overview_answers_a_verified_session(authed):
    response = authed.get("/api/dashboard/overview")
    assert response.status_code == 200
    assert response.get_json()["requestCount"] == 0
