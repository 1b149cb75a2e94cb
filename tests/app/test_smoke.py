async def test_order_end_to_end(api):
    shop = await api.shop()
    answer = await api.order(shop)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["order"]["status"] == "fulfilled"
    assert body["jwt"]
