"""IAM: who holds which global roles, what each role grants, and who belongs to which project.

Batch calls resolve all their ids in one statement per kind and apply entirely or not at all.
"""
