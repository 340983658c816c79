// Answers GET /function/hello?name=Ada with "Hello, Ada!".
export default function hello(request) {
  const name = new URL(request.url).searchParams.get('name') ?? 'world';
  return `Hello, ${name}!\n`;
}
