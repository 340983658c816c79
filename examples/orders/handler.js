// Receives an order as a CloudEvent (ce-* headers, the order as the JSON body) and answers
// with the priced order. The event id is the stream sequence and stays the same on a
// redelivery, so it is the key to use for idempotent side effects.
export default async function price(request) {
  const order = await request.json();
  if (!Array.isArray(order.items) || order.items.length === 0) {
    // A 4xx is a failure too: retried, then dead-lettered with this message.
    return new Response('an order needs items\n', { status: 422 });
  }
  const total = order.items.reduce((sum, item) => sum + Number(item.qty) * Number(item.price), 0);
  return {
    id: order.id,
    event: request.headers.get('ce-id'),
    items: order.items.length,
    total: Math.round(total * 100) / 100,
    pricedAt: new Date().toISOString(),
  };
}
