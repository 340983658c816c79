// A todo API: POST a todo as JSON, get it back with an id; GET lists them.
// State lives in the replica's memory: fine for a demo, not for production.
import { z } from 'zod';

const Todo = z.object({
  title: z.string().min(1).max(200),
  done: z.boolean().default(false),
});

const todos = [];
let nextId = 1;

export default async function api(request, context) {
  const url = new URL(request.url);
  if (request.method === 'GET' && url.pathname === '/todos') return { todos };
  if (request.method === 'POST' && url.pathname === '/todos') {
    let body;
    try {
      body = await request.json();
    } catch {
      return Response.json({ error: 'body must be JSON' }, { status: 400 });
    }
    const parsed = Todo.safeParse(body);
    if (!parsed.success) {
      return Response.json({ error: 'invalid todo', issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) }, { status: 422 });
    }
    if (todos.length >= 1000) todos.shift(); // bounded, like everything else
    const todo = { id: nextId++, ...parsed.data };
    todos.push(todo);
    context.logger.info('todo created', { id: todo.id });
    return Response.json(todo, { status: 201 });
  }
  return Response.json({ error: `no route ${request.method} ${url.pathname}` }, { status: 404 });
}
