"""Errors of the event domain: none of its own. A bad filter or page is the query builder's
INVALID_ARGUMENT, a bad time range the request validation's, and an unknown or foreign project
authorization's PROJECT_NOT_FOUND."""
