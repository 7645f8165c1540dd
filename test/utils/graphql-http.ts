// One GraphQL-over-HTTP POST to a server under test (in process, a child process, Bun or Deno), with an
// optional bearer credential; the reply as the GraphQL over HTTP spec's media type gives it.
export interface GraphqlReply {
  status: number;
  headers: Headers;
  data?: any;
  errors?: { message: string; path?: string[]; extensions?: Record<string, any> }[];
  /** The raw body (for failure messages). */
  text: string;
}

export async function postGraphql(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  credential?: string,
): Promise<GraphqlReply> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json",
      ...(credential ? { authorization: `Bearer ${credential}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const text = await res.text();
  const body = JSON.parse(text) as Pick<GraphqlReply, "data" | "errors">;
  return { status: res.status, headers: res.headers, data: body.data, errors: body.errors, text };
}
