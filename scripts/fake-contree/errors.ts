// API errors: thrown anywhere in the fake, turned by the server into the real service's error body
// `{error, status}` with the right status code (and Retry-After on 410/425/429).

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter?: number | string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new ApiError(400, message);
export const notFound = (message: string) => new ApiError(404, message);
export const conflict = (message: string) => new ApiError(409, message);
export const unprocessable = (message: string) => new ApiError(422, message);
export const tooEarly = (message: string, retryAfter: number | string = 1) =>
  new ApiError(425, message, retryAfter);
export const tooMany = (message: string, retryAfter: number | string = 1) =>
  new ApiError(429, message, retryAfter);
