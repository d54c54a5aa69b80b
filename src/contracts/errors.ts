import { Type, type Static } from 'typebox'

/** The one shape of every error answer. `message` names the field and the rule below 500. */
export const ErrorSchema = Type.Object(
  {
    statusCode: Type.Integer(),
    code: Type.String({ examples: ['VALIDATION_FAILED'] }),
    error: Type.String({ examples: ['Bad Request'] }),
    message: Type.String({ examples: ["servicePath: '/a b' must start with '/' and hold only RFC 3986 path characters"] }),
  },
  { $id: 'Error', additionalProperties: true },
)
export type ErrorBody = Static<typeof ErrorSchema>
