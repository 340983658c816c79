// One receipt line per priced order, on stdout (the function's log).
export default async function receipt(request) {
  const order = await request.json();
  const line = `receipt: order ${order.id}, ${order.items} item(s), total ${order.total.toFixed(2)}`;
  console.log(line);
  return `${line}\n`;
}
