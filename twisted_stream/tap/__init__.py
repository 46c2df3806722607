"""
The modules behind the twistd plugins: each provides C{Options} and
C{makeService}, as L{twisted.application.service.ServiceMaker} expects.
"""
